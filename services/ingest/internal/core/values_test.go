package core

import (
	"encoding/json"
	"testing"
)

func TestAppendValue(t *testing.T) {
	t.Parallel()
	types := NewTypes()
	types.Add(90001, TypeInfo{})                        // an enum
	types.Add(90002, TypeInfo{Elem: 90001, Delim: ','}) // its array
	types.Add(90003, TypeInfo{Base: OIDInt4})           // a domain over int4
	m := &Mapper{Types: types}
	tests := []struct {
		name string
		oid  uint32
		in   string
		want string
	}{
		{"int2", OIDInt2, "-32768", `-32768`},
		{"int4", OIDInt4, "42", `42`},
		{"int8", OIDInt8, "9223372036854775807", `9223372036854775807`},
		{"numeric exact", OIDNumeric, "12345678901234567890.123456789", `"12345678901234567890.123456789"`},
		{"numeric nan", OIDNumeric, "NaN", `"NaN"`},
		{"real", OIDFloat4, "1.5", `1.5`},
		{"double", OIDFloat8, "-2.5e-07", `-2.5e-07`},
		{"double infinity", OIDFloat8, "Infinity", `"Infinity"`},
		{"bool true", OIDBool, "t", `true`},
		{"bool false", OIDBool, "f", `false`},
		{"text", OIDText, "he said \"hi\"\n", `"he said \"hi\"\n"`},
		{"varchar", OIDVarchar, "é", `"é"`},
		{"uuid", OIDUUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`},
		{"date", OIDDate, "2024-01-02", `19724`},
		{"date before epoch", OIDDate, "1969-12-31", `-1`},
		{"date BC", OIDDate, "0001-01-01 BC", `-719528`},
		{"timestamp", OIDTimestamp, "2024-01-02 03:04:05.123456", `1704164645123456`},
		{"timestamptz utc", OIDTimestamptz, "2024-01-02 03:04:05.5+00", `"2024-01-02T03:04:05.5Z"`},
		{"timestamptz offset", OIDTimestamptz, "2024-01-02 03:04:05+05:30", `"2024-01-01T21:34:05Z"`},
		{"timestamptz infinity", OIDTimestamptz, "infinity", `"infinity"`},
		{"time", OIDTime, "01:02:03.000004", `3723000004`},
		{"timetz", OIDTimetz, "01:02:03+02", `"23:02:03Z"`},
		{"interval", OIDInterval, "P1Y2M3DT4H5M6.5S", `"P1Y2M3DT4H5M6.5S"`},
		{"json", OIDJSON, `{"a": [1, 2]}`, `"{\"a\": [1, 2]}"`},
		{"jsonb", OIDJSONB, `{"a": 1}`, `"{\"a\": 1}"`},
		{"bytea", OIDBytea, `\x00ff10`, `"AP8Q"`},
		{"int array", 1007, "{1,2,NULL,4}", `[1,2,null,4]`},
		{"text array quoted", 1009, `{"a,b","c\"d",e,NULL,"NULL"}`, `["a,b","c\"d","e",null,"NULL"]`},
		{"2d array", 1007, "{{1,2},{3,4}}", `[[1,2],[3,4]]`},
		{"array with bounds", 1007, "[0:1]={7,8}", `[7,8]`},
		{"empty array", 1009, "{}", `[]`},
		{"numeric array", 1231, "{1.10,NaN}", `["1.10","NaN"]`},
		{"enum", 90001, "happy", `"happy"`},
		{"enum array", 90002, "{happy,sad}", `["happy","sad"]`},
		{"domain", 90003, "7", `7`},
		{"unknown type", 123456, "(1,2)", `"(1,2)"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := m.AppendValue(nil, tc.oid, []byte(tc.in))
			if err != nil {
				t.Fatalf("AppendValue(%d, %q): %v", tc.oid, tc.in, err)
			}
			if string(got) != tc.want {
				t.Errorf("AppendValue(%d, %q) = %s, want %s", tc.oid, tc.in, got, tc.want)
			}
			if !json.Valid(got) {
				t.Errorf("not valid JSON: %s", got)
			}
		})
	}
}

func TestAppendValueDouble(t *testing.T) {
	t.Parallel()
	m := &Mapper{Decimal: DecimalDouble}
	got, err := m.AppendValue(nil, OIDNumeric, []byte("12.50"))
	if err != nil || string(got) != "12.5" {
		t.Fatalf("numeric as double = %s, %v; want 12.5", got, err)
	}
}

func TestAppendValueErrors(t *testing.T) {
	t.Parallel()
	m := &Mapper{}
	tests := []struct {
		name string
		oid  uint32
		in   string
	}{
		{"bool", OIDBool, "yes"},
		{"int", OIDInt4, "12a"},
		{"float", OIDFloat8, "x"},
		{"numeric", OIDNumeric, "1.2.3"},
		{"bytea escape format", OIDBytea, `abc`},
		{"bytea odd", OIDBytea, `\x0`},
		{"date", OIDDate, "2024/01/02"},
		{"timestamp", OIDTimestamp, "2024-01-02T03:04:05"},
		{"timestamptz without zone", OIDTimestamptz, "2024-01-02 03:04:05"},
		{"array unterminated", 1007, "{1,2"},
		{"array trailing", 1007, "{1}x"},
		{"array bad element", 1007, "{1,x}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := m.AppendValue([]byte("prefix"), tc.oid, []byte(tc.in))
			if err == nil {
				t.Fatalf("AppendValue(%d, %q) = %s, want an error", tc.oid, tc.in, got)
			}
			if string(got) != "prefix" {
				t.Errorf("dst changed on error: %q", got)
			}
		})
	}
}

// FuzzAppendValue feeds arbitrary server text to every rule: the output is
// valid JSON or an error, never a panic or broken JSON.
func FuzzAppendValue(f *testing.F) {
	oids := []uint32{OIDBool, OIDInt4, OIDInt8, OIDFloat4, OIDFloat8, OIDNumeric, OIDText, OIDBytea, OIDDate,
		OIDTimestamp, OIDTimestamptz, OIDTime, OIDTimetz, OIDInterval, OIDJSONB, OIDUUID, 1007, 1009, 1231, 1185, 1001}
	for _, s := range []string{"1", "t", "2024-01-02", "2024-01-02 03:04:05.5+00", `\x00ff`, "{1,2}", `{"a\"",NULL}`,
		"{{1},{2}}", "01:02:03+02", "NaN", "-1.5e3", "0001-01-01 00:00:00+00 BC", "[1:2]={1,2}", "\xff\x00"} {
		for i := range oids {
			f.Add(uint8(i), s)
		}
	}
	types := NewTypes()
	f.Fuzz(func(t *testing.T, which uint8, in string) {
		m := &Mapper{Types: types}
		oid := oids[int(which)%len(oids)]
		out, err := m.AppendValue(nil, oid, []byte(in))
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("AppendValue(%d, %q) = %q: not valid JSON", oid, in, out)
		}
	})
}
