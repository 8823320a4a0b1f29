"""Reports from per-test result records: plots, summary.json, index.html, trend, Allure files.

The controller calls `harness.report.trend.build_reports`; workers only need `model`.
Imports run one way: model → summary → history → page, html → trend.
"""
