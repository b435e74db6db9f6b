"""PII masking and normalisation: the same transform as ``guest-examples/pii-mask`` (Rust),
with the same configuration keys and the same output byte for byte."""

import wrt_sdk
from wrt_sdk import Level, Operation, OutputRecord, TransformError, Value_Null, Value_Text, Value_Timestamp


class PiiMask:
    def __init__(self, config: wrt_sdk.Config):
        self.salt = config.get("salt", "")
        if not self.salt:
            wrt_sdk.log(Level.WARN, "no `salt` configured: e-mail hashes are unsalted")
        self.hash = config.list("hash-columns") or ["email"]
        self.mask = config.list("mask-columns") or ["phone"]
        self.drop = config.list("drop-columns") or ["password_hash"]

    def process(self, event: wrt_sdk.ChangeEvent) -> list[OutputRecord]:
        code = wrt_sdk.op_code(event.op)
        source = wrt_sdk.row_of(event)
        if event.op == Operation.TRUNCATE:
            source = []
        elif source is None:
            raise TransformError("missing-row", f"a `{code}` event without its row")
        row = [column for column in source if column.name not in self.drop]
        for column in row:
            if column.name in self.hash:
                text = text_or_null(column)
                if text is not None:
                    # The host's hash and Unicode case mapping, as in every language.
                    digest = wrt_sdk.sha256(self.salt + wrt_sdk.lower(wrt_sdk.trim(text)))
                    column.value = Value_Text(digest.hex())
            elif column.name in self.mask:
                text = text_or_null(column)
                if text is not None:
                    digits = [c for c in text if c in "0123456789"]
                    column.value = Value_Text("***" + "".join(digits[-4:]))
            elif isinstance(column.value, Value_Timestamp):
                column.value = Value_Text(wrt_sdk.rfc3339(column.value.value))
        wrt_sdk.set_column(row, "_op", Value_Text(code))
        wrt_sdk.set_column(row, "_commit_time", Value_Text(wrt_sdk.rfc3339(event.commit_time)))
        return [OutputRecord(event.source.table, row, [])]


def text_or_null(column) -> str | None:
    """PII columns must hold text; anything else is a schema surprise worth a dead letter."""
    if isinstance(column.value, Value_Null):
        return None
    if isinstance(column.value, Value_Text):
        return column.value.value
    raise TransformError(
        "type-mismatch", f"column `{column.name}` should be text, found {wrt_sdk.type_name(column.value)}"
    )


Transform = wrt_sdk.export_transform(PiiMask)
