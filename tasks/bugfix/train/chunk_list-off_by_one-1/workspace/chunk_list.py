def chunk_list(items, size):
    """Split items into consecutive lists of size elements; the last one may be shorter.

    Raises ValueError when size is not positive.
    """
    if size <= 0:
        raise ValueError("size must be positive")
    chunks = []
    for start in range(-1, len(items), size):
        chunks.append(items[start:start + size])
    return chunks
