"""Every event becomes its row plus ``set_order``: a set of strings in its iteration order,
which follows Python's string hashing, so the determinism tests can compare two runs."""

import wrt_sdk

WORDS = ["ant", "bee", "cat", "dog", "eel", "fox", "gnu"]


class Entropy:
    def __init__(self, config):
        pass

    def process(self, event):
        row = wrt_sdk.row_of(event) or []
        words = set(WORDS) | {event.source.table}
        wrt_sdk.set_column(row, "set_order", wrt_sdk.Value_Text(",".join(words)))
        return [wrt_sdk.OutputRecord(event.source.table, row, [])]


Transform = wrt_sdk.export_transform(Entropy)
