"""Helpers of the test suites (not tests): case builders per op, the backend parametrisation, error bounds.

Imported as `from _helpers.upsample_cases import ...`: pytest puts tests/ on sys.path (rootdir conftest),
and the leading underscore keeps these modules from shadowing anything under a public name.
"""
