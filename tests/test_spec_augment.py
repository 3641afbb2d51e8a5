"""SpecAugment masks: bands of bounded width, filled with the window's mean, reproducible from torch's seed."""

import torch

from edge_runtime.features import FeatureSpec
from train.spec_augment import SpecAugment

SPEC = FeatureSpec()


def test_masks_hide_bounded_bands_with_the_window_mean_and_repeat_under_a_seed():
    torch.manual_seed(0)
    features = torch.randn(64, SPEC.frames_per_clip, SPEC.n_mels) * 3.0 - 5.0
    masks = SpecAugment(freq_masks=2, freq_width=5, time_masks=2, time_width=8)
    torch.manual_seed(1)
    masked = masks(features)
    torch.manual_seed(1)
    assert torch.equal(masked, masks(features))
    assert masked.shape == features.shape
    changed = masked != features
    fill = features.mean(dim=(1, 2), keepdim=True).expand_as(features)
    assert torch.equal(masked[changed], fill[changed])
    # A hidden mel bin is hidden in every frame, a hidden frame in every bin; two masks of <= 5 bins / 8 frames each.
    hidden_bins = changed.all(dim=1).sum(dim=1)
    hidden_frames = changed.all(dim=2).sum(dim=1)
    assert hidden_bins.max() <= 10 and hidden_frames.max() <= 16
    assert hidden_bins.float().mean() > 1.0 and hidden_frames.float().mean() > 2.0
    rows_with_partial = (changed & ~changed.all(dim=1, keepdim=True) & ~changed.all(dim=2, keepdim=True)).sum()
    assert rows_with_partial == 0  # every changed cell lies in a hidden bin or a hidden frame


def test_no_masks_leave_features_unchanged():
    features = torch.randn(4, SPEC.frames_per_clip, SPEC.n_mels)
    assert torch.equal(SpecAugment(freq_masks=0, time_masks=0)(features), features)
