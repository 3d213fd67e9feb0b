"""Reporting: the report writers (registered in ``writers.py``), Allure labels and run files, readable summaries."""
