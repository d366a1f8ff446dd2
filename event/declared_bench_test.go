package event_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
)

// BenchmarkCheckAs measures the check of one event's data, per kind of
// type: a Go type's latest version (decoded into the Go type), an older
// version of a Go type (its schema, then the upcast and the Go decode), and
// a type declared by a schema file (the compiled schema). BENCHMARKS.md
// has the figures.
func BenchmarkCheckAs(b *testing.B) {
	reg := edupulse.Registry()
	if _, err := event.LoadSchemaDir(reg, examplesDir); err != nil {
		b.Fatal(err)
	}
	const ids = `"learner_id":"0190d1e2-0000-7000-8000-000000000002"`
	for _, bc := range []struct {
		name, typ, dataschema, data string
	}{
		{"go-latest", edupulse.TypeQuizSubmitted, "", `{"quiz_id":"0190d1e2-0000-7000-8000-000000000001",` + ids + `,"score_raw":93,"max_score":100}`},
		{"go-v1", edupulse.TypeQuizSubmitted, event.SchemaURN(edupulse.TypeQuizSubmitted, 1), `{"quiz_id":"0190d1e2-0000-7000-8000-000000000001",` + ids + `,"score_raw":93}`},
		{"declared", "course.completed", "", `{"course_id":"0190d1e2-0000-7000-8000-000000000001",` + ids + `,"grade":93,"completed_at":"2026-12-06T07:00:00Z"}`},
		{"declared-modules", "course.completed", "", `{"course_id":"0190d1e2-0000-7000-8000-000000000001",` + ids +
			`,"grade":93,"feedback":"clear and well paced","modules":[{"module_id":"m1","score":90},{"module_id":"m2","score":96},{"module_id":"m3","score":88}]}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			data := []byte(bc.data)
			if _, err := reg.CheckAs(bc.typ, bc.dataschema, data); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			cpu := processCPU()
			for b.Loop() {
				if _, err := reg.CheckAs(bc.typ, bc.dataschema, data); err != nil {
					b.Fatal(err)
				}
			}
			// CPU time, garbage collection included, holds up better than
			// wall time on a loaded machine.
			b.ReportMetric(float64((processCPU()-cpu).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
