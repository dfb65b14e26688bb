"""SHAP explanations of the global ranker (token- and field-level)."""

from ecrec.explain.shap_explain import (
    DEFAULT_MAX_EVALS,
    FieldExplanation,
    TokenExplanation,
    explain_fields,
    explain_run,
    explain_tokens,
    named_attributes,
    product_fields,
    write_explanations,
)

__all__ = [
    "DEFAULT_MAX_EVALS",
    "FieldExplanation",
    "TokenExplanation",
    "explain_fields",
    "explain_run",
    "explain_tokens",
    "named_attributes",
    "product_fields",
    "write_explanations",
]
