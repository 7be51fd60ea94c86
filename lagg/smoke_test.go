package lagg_test

import (
	"bytes"
	"testing"

	"github.com/ulagg/ulagg/internal/testkit"
)

func TestSmokeFailoverEcho(t *testing.T) {
	p := newPair(t, "failover", 2, nil)
	testkit.ServeEcho(t, p.b.listen(t, 7))
	testkit.CheckEcho(t, p.a.dialer(p.b, 7), bytes.Repeat([]byte("ulagg"), 1000))
	st := p.a.l.Status()
	t.Logf("%+v", st)
}
