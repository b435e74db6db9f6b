"""Profile variant "passthrough": returns the event's row unchanged as one record: null +
lowering a whole row back out of Python (the PII output has about the same size)."""

import wrt_sdk
from wrt_sdk import OutputRecord


class Passthrough:
    def __init__(self, config):
        pass

    def process(self, event):
        return [OutputRecord(event.source.table, wrt_sdk.row_of(event) or [], [])]


Transform = wrt_sdk.export_transform(Passthrough)
