def top_k(counts, k):
    """Return the k keys with the largest counts, largest first; ties go to the
    alphabetically smaller key. Fewer keys than k: all of them."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[1]))
    return [key for key, _ in ranked[:k]]
