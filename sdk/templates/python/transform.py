import wrt_sdk
from wrt_sdk import OutputRecord, TransformError, Value_Text


class Tagger:
    def __init__(self, config: wrt_sdk.Config):
        pass

    def process(self, event: wrt_sdk.ChangeEvent) -> list[OutputRecord]:
        code = wrt_sdk.op_code(event.op)
        row = wrt_sdk.row_of(event)
        if row is None:
            raise TransformError("missing-row", f"a `{code}` event without its row")
        wrt_sdk.set_column(row, "_op", Value_Text(code))
        return [OutputRecord(event.source.table, row, [])]


Transform = wrt_sdk.export_transform(Tagger)
