"""Runs under several torch thread counts, for the tests that hold results equal across them."""

import torch


def per_thread_count(fn, thread_counts):
    """[fn() under each torch thread count in thread_counts (None: the current one)]; the thread count is
    restored afterwards."""
    threads, results = torch.get_num_threads(), []
    try:
        for n in thread_counts:
            torch.set_num_threads(n or threads)
            results.append(fn())
    finally:
        torch.set_num_threads(threads)
    return results
