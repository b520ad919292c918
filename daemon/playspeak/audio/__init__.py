"""The audio stage: decoder (streamed bytes → PCM), ring buffer, player (PCM → device)."""
