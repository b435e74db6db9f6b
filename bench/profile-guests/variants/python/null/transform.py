"""Profile variant "null": the SDK's export_transform dispatch, a user process that returns
nothing without touching the event. null - raw-null = the SDK's per-event dispatch."""

import wrt_sdk


class Null:
    def __init__(self, config):
        pass

    def process(self, event):
        return []


Transform = wrt_sdk.export_transform(Null)
