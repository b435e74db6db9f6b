"""Profile variant "raw-null": no SDK at all. The export answers every event with an empty
list without reading it: what remains is the call itself and componentize-py's lifting of
the whole batch into Python objects (and lowering the empty outcomes back)."""

from componentize_py_types import Ok
from wit_world import exports


class Transform(exports.Transform):
    def init(self) -> None:
        pass

    def process(self, events):
        return [Ok([]) for _ in events]
