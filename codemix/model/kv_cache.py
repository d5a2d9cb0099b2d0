"""KVCache: keys and values of every layer, filled left to right, for incremental generation."""

import torch


class KVCache:
    """Holds up to `max_len` positions of keys/values per layer, [B, max_len, Hkv, D] each.

    Buffers are allocated on the first update, in the dtype and device of the keys the model
    produces (so autocast or a bf16 model gets a bf16 cache without the caller saying so).
    The decoder calls `update` once per layer, then `advance` once per forward."""

    def __init__(self, n_layers: int, batch_size: int, max_len: int) -> None:
        self.batch_size = batch_size
        self.max_len = max_len
        self.length = 0
        self._keys: list[torch.Tensor | None] = [None] * n_layers
        self._values: list[torch.Tensor | None] = [None] * n_layers

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v [B, T, Hkv, D] after the cached positions; return all keys/values so far."""
        end = self.length + k.shape[1]
        if end > self.max_len:
            raise ValueError(f"KV cache full: {self.length} cached + {k.shape[1]} new > max_len {self.max_len}")
        if k.shape[0] != self.batch_size:
            raise ValueError(f"KV cache holds batch {self.batch_size}, got batch {k.shape[0]}")
        if self._keys[layer] is None:
            shape = (self.batch_size, self.max_len, *k.shape[2:])
            self._keys[layer] = k.new_zeros(shape)
            self._values[layer] = v.new_zeros(shape)
        keys, values = self._keys[layer], self._values[layer]
        keys[:, self.length:end] = k
        values[:, self.length:end] = v
        return keys[:, :end], values[:, :end]

    def advance(self, n: int) -> None:
        self.length += n

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Keep only these batch rows (generation drops the rows that are done)."""
        self.batch_size = len(rows)
        for layer, keys in enumerate(self._keys):
            if keys is not None:
                self._keys[layer], self._values[layer] = keys[rows], self._values[layer][rows]
