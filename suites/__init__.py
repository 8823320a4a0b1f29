"""The certification suites users run (shipped in the wheel as `harness.suites`), with the
reference apps (`apps/`) and the reference management tools (`tools/`) they use."""
