// PII masking and normalisation: the same transform as guest-examples/pii-mask (Rust), with
// the same configuration keys and the same output byte for byte.
package main

import (
	"encoding/hex"
	"slices"
	"strings"

	"wit_component/wrt"
)

type piiMask struct {
	salt             string
	hash, mask, drop []string
}

func newPiiMask(config wrt.Config) (wrt.Transform, error) {
	list := func(key, fallback string) []string {
		if items, ok := config.List(key); ok {
			return items
		}
		return []string{fallback}
	}
	p := &piiMask{
		salt: config.GetOr("salt", ""),
		hash: list("hash-columns", "email"),
		mask: list("mask-columns", "phone"),
		drop: list("drop-columns", "password_hash"),
	}
	if p.salt == "" {
		wrt.Log(wrt.LevelWarn, "no `salt` configured: e-mail hashes are unsalted")
	}
	return p, nil
}

func (p *piiMask) Process(event wrt.ChangeEvent) ([]wrt.OutputRecord, error) {
	row, ok := wrt.RowOf(event)
	switch {
	case event.Op == wrt.Truncate:
		row = wrt.Row{}
	case !ok:
		return nil, wrt.Errorf("missing-row", "a `%s` event without its row", wrt.OpCode(event.Op))
	}
	row = slices.DeleteFunc(row, func(c wrt.Column) bool { return slices.Contains(p.drop, c.Name) })
	for i := range row {
		column := &row[i]
		switch {
		case slices.Contains(p.hash, column.Name):
			text, err := textOrNull(*column)
			if err != nil {
				return nil, err
			}
			if text != nil {
				// The host's hash and Unicode case mapping, as in every language.
				sum := wrt.Sha256([]byte(p.salt + wrt.Lower(wrt.Trim(*text))))
				column.Value = wrt.Text(hex.EncodeToString(sum))
			}
		case slices.Contains(p.mask, column.Name):
			text, err := textOrNull(*column)
			if err != nil {
				return nil, err
			}
			if text != nil {
				column.Value = wrt.Text("***" + lastDigits(*text, 4))
			}
		case column.Value.Tag() == wrt.TagTimestamp:
			column.Value = wrt.Text(wrt.RFC3339(column.Value.Timestamp()))
		}
	}
	row = wrt.Set(row, "_op", wrt.Text(wrt.OpCode(event.Op)))
	row = wrt.Set(row, "_commit_time", wrt.Text(wrt.RFC3339(event.CommitTime)))
	return []wrt.OutputRecord{wrt.NewRecord(event.Source.Table, row)}, nil
}

// lastDigits keeps the last n ASCII digits: "+44 20 7946 0958" -> "0958".
func lastDigits(text string, n int) string {
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, text)
	return digits[max(0, len(digits)-n):]
}

// textOrNull: PII columns must hold text; anything else is a schema surprise worth a dead letter.
func textOrNull(column wrt.Column) (*string, error) {
	switch column.Value.Tag() {
	case wrt.TagNull:
		return nil, nil
	case wrt.TagText:
		text := column.Value.Text()
		return &text, nil
	}
	return nil, wrt.Errorf("type-mismatch", "column `%s` should be text, found %s", column.Name, wrt.TypeName(column.Value))
}

func init() { wrt.Register(newPiiMask) }
