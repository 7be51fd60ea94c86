package lagg

import "testing"

func TestFlowTableBindsLeastLoaded(t *testing.T) {
	var ft flowTable
	// Eight new buckets over 4 ports go round the ports.
	for h := uint32(0); h < 8; h++ {
		if got, want := ft.port(h, 4), int(h%4); got != want {
			t.Fatalf("bucket %d: got port %d, want %d", h, got, want)
		}
	}
	// A bound bucket keeps its port whatever else binds.
	if got := ft.port(5, 4); got != 1 {
		t.Fatalf("bucket 5 again: got port %d, want 1", got)
	}
	// Same bucket (hash differs by a multiple of flowBuckets): same port.
	if got := ft.port(5+flowBuckets, 4); got != 1 {
		t.Fatalf("hash sharing bucket 5: got port %d, want 1", got)
	}
	for i := 0; i < 4; i++ {
		if got := ft.bound[i].Load(); got != 2 {
			t.Errorf("port %d: %d buckets bound, want 2", i, got)
		}
	}
}

func TestFlowTableAging(t *testing.T) {
	var ft flowTable
	ft.port(1, 2) // port 0
	ft.port(2, 2) // port 1
	ft.age()      // both were used: kept, marks cleared
	if ft.bound[0].Load() != 1 || ft.bound[1].Load() != 1 {
		t.Fatalf("after first aging: bound %d/%d, want 1/1", ft.bound[0].Load(), ft.bound[1].Load())
	}
	ft.port(2, 2) // bucket 2 stays busy
	ft.age()      // bucket 1 idle a whole period: unbound
	if ft.bucket[1].Load() != 0 || ft.bound[0].Load() != 0 {
		t.Fatalf("idle bucket not unbound: bucket %#x, port 0 bound %d", ft.bucket[1].Load(), ft.bound[0].Load())
	}
	if ft.port(2, 2) != 1 {
		t.Fatal("busy bucket moved")
	}
	// A new flow now goes to the emptier port 0.
	if got := ft.port(3, 2); got != 0 {
		t.Fatalf("new flow: got port %d, want 0", got)
	}
}

func TestFlowTableAllocs(t *testing.T) {
	var ft flowTable
	h := uint32(0)
	if a := testing.AllocsPerRun(1000, func() { ft.port(h, 4); h++ }); a != 0 {
		t.Fatalf("got %v allocs per placement, want 0", a)
	}
}
