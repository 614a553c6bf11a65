"""The offline sentence-embedding model: loads from its PyPI packages with hub access off, gives normalised vectors
whose similarity follows meaning, and fails with a typed error when its file is damaged."""

from __future__ import annotations

import numpy as np
import pytest

from voice_agent.embedding import DIM, Embedder, get_embedder
from voice_agent.errors import ModelError


def test_vectors_are_normalised_and_deterministic():
    emb = get_embedder()
    texts = ["turn off the kitchen light", "", "a much longer sentence " * 60]
    v = emb.encode(texts)
    assert v.shape == (3, DIM) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    again = emb.encode(list(reversed(texts)))[::-1]
    assert np.allclose(v, again, atol=1e-5)  # batching and order do not change a vector
    assert get_embedder() is emb


def test_similarity_follows_meaning_not_words():
    emb = get_embedder()
    anchor = "switch off the lights in the kitchen"
    paraphrase = "please turn the kitchen lamp off"
    unrelated = "wire five thousand dollars to this account"
    assert emb.similarity(anchor, paraphrase) > emb.similarity(anchor, unrelated) + 0.2
    # word overlap alone does not decide: same words, different act
    assert emb.similarity("read my email", "check my inbox") > emb.similarity("read my email", "read the thermostat")


def test_a_damaged_model_file_is_a_typed_error(tmp_path, monkeypatch):
    from voice_agent import embedding, models

    real = models.model_file(embedding.MODEL, "model.onnx")
    broken = tmp_path / "model.onnx"
    broken.write_bytes(real.read_bytes()[: real.stat().st_size // 2])  # cut off mid-file
    monkeypatch.setattr(embedding, "model_file",
                        lambda name, fname: broken if fname == "model.onnx" else models.model_file(name, fname))
    with pytest.raises(ModelError) as err:
        Embedder(verify_files=False)
    assert err.value.code == "model-corrupt"
