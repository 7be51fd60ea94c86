package lacp

import (
	"encoding/binary"
	"errors"
)

// EtherTypeSlowProtocols is the Ethertype of LACPDUs and Marker PDUs.
const EtherTypeSlowProtocols = 0x8809

// Slow protocol subtypes.
const (
	SubtypeLACP   = 1
	SubtypeMarker = 2
)

// slowProtocolsAddr is the destination of every frame the engine sends.
var slowProtocolsAddr = [6]byte{0x01, 0x80, 0xc2, 0x00, 0x00, 0x02}

const (
	ethHeaderLen = 14
	pduLen       = 110 // LACPDU and Marker PDU are both 110 octets
	frameLen     = ethHeaderLen + pduLen

	// lacpMinLen is a LACPDU up to and including its Terminator TLV; the 50
	// trailing reserved octets carry nothing and are not required.
	lacpMinLen = 60
	// markerMinLen is a Marker PDU up to and including its Terminator TLV.
	markerMinLen = 20

	tlvActor, tlvPartner, tlvCollector = 1, 2, 3
	lenInfo, lenCollector              = 20, 16
	tlvMarkerInfo, tlvMarkerResponse   = 1, 2
	lenMarker                          = 16
)

// Decode errors. ErrNotLACP and ErrNotMarker mean the frame is some other
// slow protocol (or not a slow protocol frame at all); the engine counts
// those as unknown, every other error as malformed.
var (
	ErrNotLACP   = errors.New("lacp: not a LACPDU")
	ErrNotMarker = errors.New("lacp: not a Marker PDU")
	ErrTruncated = errors.New("lacp: truncated PDU")
	ErrVersion   = errors.New("lacp: unsupported version 0")
	ErrTLV       = errors.New("lacp: bad TLV type or length")
)

// LACPDU is a decoded LACPDU (IEEE 802.1AX-2014 6.4.2.3).
type LACPDU struct {
	// Version is the received version. Versions above 1 are accepted for
	// forward compatibility: their v1 fields are used, further TLVs skipped.
	Version           uint8
	Actor, Partner    Info
	CollectorMaxDelay uint16
}

// MarkerPDU is a decoded Marker Information or Marker Response PDU
// (IEEE 802.1AX-2014 6.5.3).
type MarkerPDU struct {
	Response        bool // Marker Response TLV (2) rather than Marker Information (1)
	RequesterPort   uint16
	RequesterSystem [6]byte
	TransactionID   uint32
}

// payload returns the slow-protocol payload of an untagged Ethernet frame
// whose subtype is want.
func payload(frame []byte, want byte, notIt error) ([]byte, error) {
	if len(frame) < ethHeaderLen+1 {
		return nil, ErrTruncated
	}
	if binary.BigEndian.Uint16(frame[12:14]) != EtherTypeSlowProtocols || frame[ethHeaderLen] != want {
		return nil, notIt
	}
	return frame[ethHeaderLen:], nil
}

// DecodeLACPDU parses a full Ethernet frame (14-octet header, no FCS)
// holding a LACPDU. The destination address is not checked (802.1AX allows
// several); reserved fields are ignored.
func DecodeLACPDU(frame []byte) (LACPDU, error) {
	var p LACPDU
	b, err := payload(frame, SubtypeLACP, ErrNotLACP)
	if err != nil {
		return p, err
	}
	if len(b) < 2 {
		return p, ErrTruncated
	}
	p.Version = b[1]
	if p.Version == 0 {
		return p, ErrVersion
	}
	if len(b) < 58 {
		return p, ErrTruncated
	}
	if b[2] != tlvActor || b[3] != lenInfo || b[22] != tlvPartner || b[23] != lenInfo ||
		b[42] != tlvCollector || b[43] != lenCollector {
		return p, ErrTLV
	}
	p.Actor = getInfo(b[4:])
	p.Partner = getInfo(b[24:])
	p.CollectorMaxDelay = binary.BigEndian.Uint16(b[44:])
	if p.Version == 1 {
		// Version 1 has nothing between Collector and Terminator.
		if len(b) < lacpMinLen {
			return p, ErrTruncated
		}
		if b[58] != 0 || b[59] != 0 {
			return p, ErrTLV
		}
		return p, nil
	}
	// Later versions may add TLVs before the Terminator; walk them so a
	// broken chain is still rejected.
	for i := 58; ; {
		if i+2 > len(b) {
			return p, ErrTruncated
		}
		t, l := b[i], int(b[i+1])
		if t == 0 && l == 0 {
			return p, nil
		}
		if t == 0 || l < 2 {
			return p, ErrTLV
		}
		if i+l > len(b) {
			return p, ErrTruncated
		}
		i += l
	}
}

// DecodeMarker parses a full Ethernet frame holding a Marker PDU.
func DecodeMarker(frame []byte) (MarkerPDU, error) {
	var m MarkerPDU
	b, err := payload(frame, SubtypeMarker, ErrNotMarker)
	if err != nil {
		return m, err
	}
	if len(b) < 2 {
		return m, ErrTruncated
	}
	if b[1] == 0 {
		return m, ErrVersion
	}
	if len(b) < markerMinLen {
		return m, ErrTruncated
	}
	switch {
	case b[2] == tlvMarkerInfo && b[3] == lenMarker:
	case b[2] == tlvMarkerResponse && b[3] == lenMarker:
		m.Response = true
	default:
		return m, ErrTLV
	}
	if b[18] != 0 || b[19] != 0 {
		return m, ErrTLV
	}
	m.RequesterPort = binary.BigEndian.Uint16(b[4:])
	copy(m.RequesterSystem[:], b[6:12])
	m.TransactionID = binary.BigEndian.Uint32(b[12:])
	return m, nil
}

// AppendFrame appends p as a full 124-octet Ethernet frame from src to the
// Slow_Protocols_Multicast address. Version 0 is sent as 1.
func (p *LACPDU) AppendFrame(dst []byte, src [6]byte) []byte {
	dst, b := appendHeader(dst, src)
	b[0], b[1] = SubtypeLACP, max(p.Version, 1)
	b[2], b[3] = tlvActor, lenInfo
	putInfo(b[4:], p.Actor)
	b[22], b[23] = tlvPartner, lenInfo
	putInfo(b[24:], p.Partner)
	b[42], b[43] = tlvCollector, lenCollector
	binary.BigEndian.PutUint16(b[44:], p.CollectorMaxDelay)
	return dst
}

// AppendFrame appends m as a full 124-octet Ethernet frame from src.
func (m *MarkerPDU) AppendFrame(dst []byte, src [6]byte) []byte {
	dst, b := appendHeader(dst, src)
	b[0], b[1] = SubtypeMarker, 1
	b[2], b[3] = tlvMarkerInfo, lenMarker
	if m.Response {
		b[2] = tlvMarkerResponse
	}
	binary.BigEndian.PutUint16(b[4:], m.RequesterPort)
	copy(b[6:12], m.RequesterSystem[:])
	binary.BigEndian.PutUint32(b[12:], m.TransactionID)
	return dst
}

// appendHeader appends a zeroed frame with its Ethernet header filled in
// and returns the frame and its payload.
func appendHeader(dst []byte, src [6]byte) ([]byte, []byte) {
	n := len(dst)
	dst = append(dst, make([]byte, frameLen)...)
	f := dst[n:]
	copy(f[0:6], slowProtocolsAddr[:])
	copy(f[6:12], src[:])
	binary.BigEndian.PutUint16(f[12:], EtherTypeSlowProtocols)
	return dst, f[ethHeaderLen:]
}

func getInfo(b []byte) Info {
	var in Info
	in.SystemPriority = binary.BigEndian.Uint16(b[0:])
	copy(in.System[:], b[2:8])
	in.Key = binary.BigEndian.Uint16(b[8:])
	in.PortPriority = binary.BigEndian.Uint16(b[10:])
	in.Port = binary.BigEndian.Uint16(b[12:])
	in.State = State(b[14])
	return in
}

func putInfo(b []byte, in Info) {
	binary.BigEndian.PutUint16(b[0:], in.SystemPriority)
	copy(b[2:8], in.System[:])
	binary.BigEndian.PutUint16(b[8:], in.Key)
	binary.BigEndian.PutUint16(b[10:], in.PortPriority)
	binary.BigEndian.PutUint16(b[12:], in.Port)
	b[14] = byte(in.State)
}
