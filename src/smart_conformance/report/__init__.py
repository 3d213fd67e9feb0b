"""Reporting: Allure labels and run files, readable summaries."""
