"""Downstream evaluation of tokenizers: reconstruction quality, codebook usage, and light classifiers on
tokens against the same classifiers on the raw signal."""

from zoo.evaluation.eeg import (
    CANONICAL_BANDS,
    WindowTask,
    balanced_accuracy,
    band_powers,
    codebook_usage,
    codebook_vectors,
    cohen_kappa,
    evaluate_raw,
    evaluate_tokenizer,
    reconstruction_metrics,
    stimulus_locked_task,
    token_embeddings,
    welch_psd,
)

__all__ = [
    "CANONICAL_BANDS",
    "WindowTask",
    "balanced_accuracy",
    "band_powers",
    "codebook_usage",
    "codebook_vectors",
    "cohen_kappa",
    "evaluate_raw",
    "evaluate_tokenizer",
    "reconstruction_metrics",
    "stimulus_locked_task",
    "token_embeddings",
    "welch_psd",
]
