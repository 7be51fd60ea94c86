package lab

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// PingResult is what Ping saw.
type PingResult struct {
	Sent, Received int
	RTTs           []time.Duration
}

// Ping sends count ICMP echo requests to dst (IPv4) from namespace ns, every
// interval, waiting up to timeout for each reply. It needs root (a raw
// socket), so it works where no ping binary is installed.
func Ping(ns string, dst netip.Addr, count int, interval, timeout time.Duration) (PingResult, error) {
	var res PingResult
	if !dst.Is4() {
		return res, fmt.Errorf("ping: %s is not IPv4", dst)
	}
	var fd int
	err := Do(ns, func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		return err
	})
	if err != nil {
		return res, fmt.Errorf("ping: raw socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(10 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return res, err
	}
	id := uint16(os.Getpid())
	to := &unix.SockaddrInet4{Addr: dst.As4()}
	buf := make([]byte, 1500)
	for seq := 0; seq < count; seq++ {
		if seq > 0 {
			time.Sleep(interval)
		}
		req := echoRequest(id, uint16(seq))
		start := time.Now()
		if err := unix.Sendto(fd, req, 0, to); err != nil {
			return res, fmt.Errorf("ping: send: %w", err)
		}
		res.Sent++
		for time.Since(start) < timeout {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue // timeout tick
			}
			if isEchoReply(buf[:n], dst, id, uint16(seq)) {
				res.Received++
				res.RTTs = append(res.RTTs, time.Since(start))
				break
			}
		}
	}
	return res, nil
}

func echoRequest(id, seq uint16) []byte {
	b := make([]byte, 8+32)
	b[0] = 8 // echo request
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], "ulagg demo ping payload........")
	binary.BigEndian.PutUint16(b[2:], checksum(b))
	return b
}

func isEchoReply(pkt []byte, from netip.Addr, id, seq uint16) bool {
	if len(pkt) < 20 {
		return false
	}
	ihl := int(pkt[0]&0xf) * 4
	if len(pkt) < ihl+8 || netip.AddrFrom4([4]byte(pkt[12:16])) != from {
		return false
	}
	icmp := pkt[ihl:]
	return icmp[0] == 0 && binary.BigEndian.Uint16(icmp[4:]) == id && binary.BigEndian.Uint16(icmp[6:]) == seq
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}
