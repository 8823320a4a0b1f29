"""Reports from per-test result records: plots, summary.json, index.html, trend, Allure files.

The controller calls `harness.report.build.build_reports`; workers only need `model`.
Imports run one way: (harness.verdict →) model → summary → history → page, html → build.
"""
