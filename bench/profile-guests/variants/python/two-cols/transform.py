"""Profile variant "two-cols": reads the two PII columns (email, phone) and returns them,
unchanged, as a two-column record. A transform that touches two columns."""

import wrt_sdk
from wrt_sdk import Column, OutputRecord, Value_Null


class TwoCols:
    def __init__(self, config):
        pass

    def process(self, event):
        row = wrt_sdk.row_of(event)
        if row is None:
            return []
        email = next((c.value for c in row if c.name == "email"), Value_Null())
        phone = next((c.value for c in row if c.name == "phone"), Value_Null())
        return [OutputRecord(event.source.table, [Column("email", email), Column("phone", phone)], [])]


Transform = wrt_sdk.export_transform(TwoCols)
