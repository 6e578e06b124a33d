package eventlog

import (
	"encoding/json"
	"time"
	"unicode/utf8"
)

// AppendJSON appends the event's JSON object, PROTOCOL.md's event frame:
//
//	{"type":"event","room":..,"id":..,"kind":..,"user":..,"session":..,"key":..,"ts":..,"body":..}
//
// with session, key and body left out when empty. It is built with plain byte appends (the body is
// stored as compact JSON and copied as is): it runs for every event sent or printed.
func (e *Event) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"type":"event","room":`...)
	dst = appendJSONString(dst, e.Room)
	dst = append(dst, `,"id":"`...)
	dst, _ = e.ID.AppendText(dst)
	dst = append(dst, `","kind":`...)
	dst = appendJSONString(dst, e.Kind)
	dst = append(dst, `,"user":`...)
	dst = appendJSONString(dst, e.User)
	if e.Session != "" {
		dst = append(dst, `,"session":`...)
		dst = appendJSONString(dst, e.Session)
	}
	if e.Key != "" {
		dst = append(dst, `,"key":`...)
		dst = appendJSONString(dst, e.Key)
	}
	dst = append(dst, `,"ts":"`...)
	dst = AppendTimestamp(dst, e.ID)
	dst = append(dst, '"')
	if len(e.Body) > 0 {
		dst = append(dst, `,"body":`...)
		dst = append(dst, e.Body...)
	}
	return append(dst, '}')
}

// AppendTimestamp appends the id's time as RFC 3339 with milliseconds in UTC
// (2026-11-27T10:21:06.123Z), the event's ts.
func AppendTimestamp(dst []byte, id ID) []byte {
	ms := int64(id.Millis())
	t := time.UnixMilli(ms).UTC()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	if year < 0 || year > 9999 {
		return t.AppendFormat(dst, "2006-01-02T15:04:05.000Z")
	}
	d2 := func(b []byte, v int) []byte { return append(b, byte('0'+v/10), byte('0'+v%10)) }
	dst = d2(dst, year/100)
	dst = d2(dst, year%100)
	dst = d2(append(dst, '-'), int(month))
	dst = d2(append(dst, '-'), day)
	dst = d2(append(dst, 'T'), hour)
	dst = d2(append(dst, ':'), minute)
	dst = d2(append(dst, ':'), sec)
	m := int(ms % 1000)
	return append(dst, '.', byte('0'+m/100), byte('0'+m/10%10), byte('0'+m%10), 'Z')
}

// appendJSONString appends s as a JSON string. Identifiers rarely need escaping, so the common
// case is one copy.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			b, _ := json.Marshal(s)
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
