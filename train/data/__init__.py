"""Data sets behind one interface: a `DataSource` builds a clip set (see `clipset.py`) that training loads.

Sources: `synthetic.SyntheticSource` (default, offline eSpeak NG + Piper), `speech_commands.SpeechCommandsSource`
(Google Speech Commands as downloaded) and `user_folder.FolderSource` (positive/ and negative/ WAVs).
Nothing is imported here, so loading a clip set does not pull in the speech engines.
"""
