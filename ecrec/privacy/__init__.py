"""Privacy accounting and the per-node privacy ledger."""
