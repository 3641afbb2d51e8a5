"""Model zoo: shapes, sizes, and the student's causality (what streaming relies on)."""

import pytest
import torch

from edge_runtime.features import FeatureSpec
from train.models import build_model, count_parameters

SPEC = FeatureSpec()


def test_crnn_baseline_has_about_70k_parameters_and_classifies_a_window():
    model = build_model("crnn", n_mels=SPEC.n_mels, num_classes=2).eval()
    assert 65_000 <= count_parameters(model) <= 75_000
    assert model(torch.randn(3, SPEC.frames_per_clip, SPEC.n_mels)).shape == (3, 2)


def test_student_is_smaller_than_the_teacher():
    student = build_model("dscnn", n_mels=SPEC.n_mels, num_classes=2)
    teacher = build_model("crnn", n_mels=SPEC.n_mels, num_classes=2)
    assert count_parameters(student) < count_parameters(teacher) / 2


def test_student_is_causal_in_time_and_unpadded():
    model = build_model("dscnn", n_mels=SPEC.n_mels, num_classes=2).eval()
    conv_paddings = [m.padding for m in model.modules() if isinstance(m, torch.nn.Conv1d)]
    assert conv_paddings and all(p == (0,) for p in conv_paddings)
    changed_from = SPEC.frames_per_clip - 10
    features = torch.randn(1, SPEC.frames_per_clip, SPEC.n_mels)
    changed = features.clone()
    changed[:, changed_from:] += 5.0  # change only the last 10 frames
    with torch.no_grad():
        body, body_changed = (
            model.blocks(model.stem(model.input_norm(x.transpose(1, 2))))
            for x in [features, changed]
        )
    # Stem output j reads frames 2j..2j+2 (kernel 3, stride 2); block output k reads stem outputs k..k+30
    # (kernel 3, dilations 1+2+4+8). So block outputs with 2(k+30)+2 < changed_from cannot see the change.
    unaffected = (changed_from - 3) // 2 - 30 + 1
    assert unaffected > 0
    assert torch.equal(body[..., :unaffected], body_changed[..., :unaffected])
    assert not torch.equal(body[..., unaffected], body_changed[..., unaffected])


def test_unknown_architecture_names_the_choices():
    with pytest.raises(ValueError, match="crnn, dscnn"):
        build_model("transformer", n_mels=40, num_classes=2)
