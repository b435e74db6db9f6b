// Package export_wrt_transform_transform is where the bindings `wit-bindgen go` generates
// look for the `transform` interface's exports; it hands them to package wrt.
package export_wrt_transform_transform

import (
	witTypes "go.bytecodealliance.org/pkg/wit/types"
	"wit_component/wrt"
	types "wit_component/wrt_transform_types"
)

func Init() witTypes.Result[witTypes.Unit, string] {
	if err := wrt.Init(); err != nil {
		return witTypes.Err[witTypes.Unit](err.Error())
	}
	return witTypes.Ok[witTypes.Unit, string](witTypes.Unit{})
}

func Process(events []types.ChangeEvent) []types.Outcome {
	return wrt.Process(events)
}
