// Every event becomes its row plus what Go's clocks said around a sleep and a goroutine
// that sleeps: `slept`, the time.Since of both, and `now`, time.Now(). Waiting parks the
// goroutines, so Go's scheduler polls WASI's monotonic clock until the timers are due.
package main

import (
	"time"

	"wit_component/wrt"
)

type entropy struct{}

func (entropy) Process(event wrt.ChangeEvent) ([]wrt.OutputRecord, error) {
	row, _ := wrt.RowOf(event)
	start := time.Now()
	time.Sleep(20 * time.Millisecond)
	done := make(chan struct{})
	go func() {
		time.Sleep(3 * time.Millisecond)
		close(done)
	}()
	<-done
	row = wrt.Set(row, "slept", wrt.Text(time.Since(start).String()))
	row = wrt.Set(row, "now", wrt.Text(time.Now().UTC().String()))
	return []wrt.OutputRecord{wrt.NewRecord(event.Source.Table, row)}, nil
}

func init() {
	wrt.Register(func(wrt.Config) (wrt.Transform, error) { return entropy{}, nil })
}
