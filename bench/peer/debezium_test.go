package main

import (
	"testing"
	"time"
)

// The renderings must match wrt's (runtime/src/event.rs) so both write the same values.
func TestRenderingsMatchWrt(t *testing.T) {
	for _, c := range []struct {
		b64   string
		scale int
		want  string
	}{{"+x4=", 2, "-12.50"}, {"BQ==", 2, "0.05"}, {"AYag", 2, "1000.00"}, {"AA==", 0, "0"}} {
		got, err := decimal(c.b64, c.scale)
		if err != nil || got != c.want {
			t.Errorf("decimal(%q, %d) = %q, %v; want %q", c.b64, c.scale, got, err, c.want)
		}
	}
	for nanos, want := range map[int64]string{
		3_723_000_000_000:                        "01:02:03",
		1_500_000:                                "00:00:00.001500",
		-(838*3600 + 59*60 + 59) * 1_000_000_000: "-838:59:59",
	} {
		if got := timeOfDay(nanos); got != want {
			t.Errorf("timeOfDay(%d) = %q, want %q", nanos, got, want)
		}
	}
	for ts, want := range map[time.Time]string{
		time.Unix(1_714_521_600, 0):           "2024-05-01T00:00:00Z",
		time.Unix(1_714_521_600, 250000000):   "2024-05-01T00:00:00.250Z",
		time.UnixMicro(1_705_716_184_000_001): "2024-01-20T02:03:04.000001Z",
		time.Unix(0, 1):                       "1970-01-01T00:00:00.000000001Z",
	} {
		if got := rfc3339(ts); got != want {
			t.Errorf("rfc3339(%v) = %q, want %q", ts, got, want)
		}
	}
}
