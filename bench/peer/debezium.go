package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/redpanda-data/benthos/v4/public/bloblang"
)

// debezium_event() is the peer's counterpart of wrt's host-side decoder (runtime/src/decode.rs):
// a Debezium JSON-converter envelope with its schema becomes
// {kind: "change", op, table, commit_time, before, after} with values typed by the schema and
// rendered as wrt renders them in the lake (decimals as exact strings, dates and times as
// ISO-8601 text, JSON documents inline), or {kind: "schema_change", row} or {kind: "heartbeat"}.
// The transform itself (what to hash, mask and drop) stays in Bloblang.
func init() {
	spec := bloblang.NewPluginSpec().Description("Decodes a Debezium change event envelope.")
	err := bloblang.RegisterMethodV2("debezium_event", spec, func(*bloblang.ParsedParams) (bloblang.Method, error) {
		return func(v any) (any, error) { return decodeEnvelope(v) }, nil
	})
	if err != nil {
		panic(err)
	}
}

func decodeEnvelope(v any) (any, error) {
	message, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("expected an envelope object, got %T", v)
	}
	schema, _ := message["schema"].(map[string]any)
	payload, ok := message["payload"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("an envelope without payload")
	}
	if schema["name"] == "io.debezium.connector.common.Heartbeat" {
		return map[string]any{"kind": "heartbeat"}, nil
	}
	source, _ := payload["source"].(map[string]any)
	commit, err := commitTime(source, payload)
	if err != nil {
		return nil, err
	}
	if ddl, ok := payload["ddl"].(string); ok {
		// Table ids as wrt lists them: `"shop"."customers"` → `shop.customers`.
		tables := []any{}
		changes, _ := payload["tableChanges"].([]any)
		for _, c := range changes {
			if c, ok := c.(map[string]any); ok {
				id, _ := c["id"].(string)
				tables = append(tables, strings.ReplaceAll(id, `"`, ""))
			}
		}
		return map[string]any{"kind": "schema_change", "row": map[string]any{
			"server":      source["name"],
			"database":    payload["databaseName"],
			"tables":      tables,
			"ddl":         ddl,
			"commit_time": rfc3339(commit),
		}}, nil
	}
	fields := map[string]map[string]any{}
	if list, ok := schema["fields"].([]any); ok {
		for _, f := range list {
			if f, ok := f.(map[string]any); ok {
				name, _ := f["field"].(string)
				fields[name] = f
			}
		}
	}
	event := map[string]any{
		"kind":        "change",
		"op":          payload["op"],
		"table":       source["table"],
		"commit_time": rfc3339(commit),
	}
	for _, image := range []string{"before", "after"} {
		row, _ := payload[image].(map[string]any)
		if row == nil {
			event[image] = nil
			continue
		}
		typed, err := decodeRow(fields[image], row)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", image, err)
		}
		event[image] = typed
	}
	return event, nil
}

func decodeRow(schema map[string]any, row map[string]any) (map[string]any, error) {
	types := map[string]map[string]any{}
	if list, ok := schema["fields"].([]any); ok {
		for _, f := range list {
			if f, ok := f.(map[string]any); ok {
				name, _ := f["field"].(string)
				types[name] = f
			}
		}
	}
	out := make(map[string]any, len(row))
	for name, value := range row {
		v, err := decodeValue(types[name], value)
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", name, err)
		}
		out[name] = v
	}
	return out, nil
}

func integer(v any) (int64, error) {
	switch n := v.(type) {
	case json.Number:
		return n.Int64()
	case float64:
		return int64(n), nil
	case int64:
		return n, nil
	case int:
		return int64(n), nil
	case uint64:
		return int64(n), nil
	}
	return 0, fmt.Errorf("expected an integer, got %T", v)
}

func decodeValue(field map[string]any, v any) (any, error) {
	if v == nil || field == nil {
		return v, nil
	}
	name, _ := field["name"].(string)
	switch name {
	case "org.apache.kafka.connect.data.Decimal":
		params, _ := field["parameters"].(map[string]any)
		scale := 0
		if s, ok := params["scale"].(string); ok {
			fmt.Sscan(s, &scale)
		}
		text, _ := v.(string)
		return decimal(text, scale)
	case "io.debezium.data.Json":
		text, _ := v.(string)
		var doc any
		if json.Unmarshal([]byte(text), &doc) != nil {
			return text, nil // kept as text rather than lost, as wrt does
		}
		return doc, nil
	case "io.debezium.time.Date", "org.apache.kafka.connect.data.Date":
		days, err := integer(v)
		if err != nil {
			return nil, err
		}
		return time.Unix(days*86400, 0).UTC().Format("2006-01-02"), nil
	case "io.debezium.time.Time", "org.apache.kafka.connect.data.Time":
		n, err := integer(v)
		return timeOfDay(n * 1_000_000), err
	case "io.debezium.time.MicroTime":
		n, err := integer(v)
		return timeOfDay(n * 1_000), err
	case "io.debezium.time.NanoTime":
		n, err := integer(v)
		return timeOfDay(n), err
	case "io.debezium.time.Timestamp", "org.apache.kafka.connect.data.Timestamp":
		n, err := integer(v)
		return rfc3339(time.UnixMilli(n)), err
	case "io.debezium.time.MicroTimestamp":
		n, err := integer(v)
		return rfc3339(time.UnixMicro(n)), err
	case "io.debezium.time.NanoTimestamp":
		n, err := integer(v)
		return rfc3339(time.Unix(0, n)), err
	case "io.debezium.time.ZonedTimestamp":
		text, _ := v.(string)
		t, err := time.Parse(time.RFC3339Nano, text)
		return rfc3339(t), err
	}
	switch field["type"] {
	case "int8", "int16", "int32", "int64":
		return integer(v)
	case "float32", "float64":
		if n, ok := v.(json.Number); ok {
			return n.Float64()
		}
	}
	return v, nil
}

// decimal renders Connect's Decimal (big-endian two's complement, base64) exactly.
func decimal(b64 string, scale int) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", err
	}
	n := new(big.Int).SetBytes(raw)
	if len(raw) > 0 && raw[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(len(raw)*8)))
	}
	digits := new(big.Int).Abs(n).String()
	sign := ""
	if n.Sign() < 0 {
		sign = "-"
	}
	if scale <= 0 {
		return sign + digits, nil
	}
	if len(digits) <= scale {
		digits = strings.Repeat("0", scale-len(digits)+1) + digits
	}
	return sign + digits[:len(digits)-scale] + "." + digits[len(digits)-scale:], nil
}

// fraction is wrt's rendering: no digits, or 3, 6 or 9 as needed.
func fraction(nanos int64) string {
	switch {
	case nanos == 0:
		return ""
	case nanos%1_000_000 == 0:
		return fmt.Sprintf(".%03d", nanos/1_000_000)
	case nanos%1_000 == 0:
		return fmt.Sprintf(".%06d", nanos/1_000)
	}
	return fmt.Sprintf(".%09d", nanos)
}

func rfc3339(t time.Time) string {
	t = t.UTC()
	return t.Format("2006-01-02T15:04:05") + fraction(int64(t.Nanosecond())) + "Z"
}

func timeOfDay(nanos int64) string {
	sign := ""
	if nanos < 0 {
		sign, nanos = "-", -nanos
	}
	secs := nanos / 1_000_000_000
	return fmt.Sprintf("%s%02d:%02d:%02d%s", sign, secs/3600, secs/60%60, secs%60, fraction(nanos%1_000_000_000))
}

func commitTime(source, payload map[string]any) (time.Time, error) {
	for _, k := range []struct {
		key  string
		unit int64
	}{{"ts_ns", 1}, {"ts_us", 1_000}, {"ts_ms", 1_000_000}} {
		if v, ok := source[k.key]; ok && v != nil {
			n, err := integer(v)
			return time.Unix(0, n*k.unit), err
		}
	}
	n, err := integer(payload["ts_ms"])
	if err != nil {
		return time.Time{}, fmt.Errorf("no commit time: %w", err)
	}
	return time.UnixMilli(n), nil
}
