"""Per-step diagnostics computed from the stages a solver already evaluated."""
