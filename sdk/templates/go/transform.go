package main

import "wit_component/wrt"

type tagger struct{}

func (tagger) Process(event wrt.ChangeEvent) ([]wrt.OutputRecord, error) {
	row, ok := wrt.RowOf(event)
	if !ok {
		return nil, wrt.Errorf("missing-row", "a `%s` event without its row", wrt.OpCode(event.Op))
	}
	row = wrt.Set(row, "_op", wrt.Text(wrt.OpCode(event.Op)))
	return []wrt.OutputRecord{wrt.NewRecord(event.Source.Table, row)}, nil
}

func init() {
	wrt.Register(func(wrt.Config) (wrt.Transform, error) { return tagger{}, nil })
}
