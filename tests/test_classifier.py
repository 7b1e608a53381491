"""The small Fashion-MNIST classifier: input conventions, shipped weights' accuracy, seeded training,
strict loading, and its use as a sample metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lpdgen.data import load_fashion_mnist
from lpdgen.evaluation.classifier import (
    ASSET,
    ClassifierConfig,
    FMNISTClassifier,
    to_classifier_input,
    train_classifier,
)
from lpdgen.evaluation.protocol import classifier_metrics, read_image_set, to_rgb


@pytest.fixture(scope="module")
def test_split():
    images, labels = load_fashion_mnist(split="test")
    return images[:2000], labels[:2000]


def test_input_conventions_agree():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    base = to_classifier_input(gray)
    assert base.shape == (3, 1, 28, 28) and base.min() >= -1 and base.max() <= 1
    padded = np.pad(gray, ((0, 0), (2, 2), (2, 2)))  # the tokenizer's 32x32 Fashion-MNIST
    assert torch.equal(to_classifier_input(padded), base)
    assert torch.allclose(to_classifier_input(to_rgb(gray)), base)  # (N, H, W, 3) uint8, averaged to gray
    as_float = torch.from_numpy(gray).float().div(127.5).sub(1)[:, None]  # (N, 1, 28, 28) in [-1, 1]
    assert torch.allclose(to_classifier_input(as_float), base)
    with pytest.raises(ValueError, match="28x28 or 32x32"):
        to_classifier_input(np.zeros((1, 30, 30), np.uint8))


def test_shipped_weights_classify_the_test_split(test_split):
    images, labels = test_split
    model = FMNISTClassifier.from_checkpoint()
    assert ASSET.stat().st_size < 1_000_000
    accuracy = model.accuracy(images, labels)
    assert accuracy > 0.89
    # also through the evaluation path: an ADM npz with labels in arr_1
    assert accuracy == pytest.approx(model.accuracy(np.pad(images, ((0, 0), (2, 2), (2, 2))), labels))


def test_classifier_metrics_on_an_npz(test_split, tmp_path):
    images, labels = test_split
    np.savez(tmp_path / "s.npz", arr_0=to_rgb(images[:500]), arr_1=labels[:500])
    model = FMNISTClassifier.from_checkpoint()
    out = classifier_metrics(model, read_image_set(tmp_path / "s.npz"))
    assert out["classifier_accuracy"] == pytest.approx(model.accuracy(images[:500], labels[:500]))
    # balanced real data: well above 1 (collapse), below 10 (label smoothing caps confidence near 0.9)
    assert 4 < out["classifier_is"] <= 10
    shuffled_labels = np.roll(labels[:500], 1)
    np.savez(tmp_path / "wrong.npz", arr_0=to_rgb(images[:500]), arr_1=shuffled_labels)
    assert classifier_metrics(model, read_image_set(tmp_path / "wrong.npz"))["classifier_accuracy"] < 0.3


def test_training_is_seeded_and_learns(test_split, tmp_path):
    train_x, train_y = load_fashion_mnist(split="train")
    kw = {"epochs": 2, "batch_size": 64, "seed": 3, "config": ClassifierConfig(channels=(8, 8, 16)), "progress": False}
    a = train_classifier(train_x[:3000], train_y[:3000], **kw)
    b = train_classifier(train_x[:3000], train_y[:3000], **kw)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert a.accuracy(*test_split) > 0.6  # chance is 0.10
    path = a.save(tmp_path / "clf", test_accuracy=0.0)
    loaded = FMNISTClassifier.from_checkpoint(path)
    assert torch.equal(loaded.logits(test_split[0][:10]), a.logits(test_split[0][:10]))
    # a config that does not match the weights is a clear error
    (tmp_path / "clf.json").write_text('{"config": {"channels": [8, 8, 32], "num_classes": 10}}')
    with pytest.raises(ValueError, match="wrong shapes"):
        FMNISTClassifier.from_checkpoint(path)
