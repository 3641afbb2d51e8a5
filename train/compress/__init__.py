"""Compression of the CRNN teacher into the deployed CausalDSCNN student (see docs/compression.md)."""
