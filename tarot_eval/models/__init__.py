"""Models from what users name them by: HF ids, local folders, GGUF files, the embedded default and fetched wheels."""
