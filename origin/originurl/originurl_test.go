package originurl_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dataplane/dataplane/internal/testserver"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/originurl"
	"github.com/dataplane/dataplane/record"
)

// roundTrip writes and reads one record through s: the opened store works.
func roundTrip(t *testing.T, s origin.Store) {
	t.Helper()
	r := record.Record{Namespace: "routes", Key: "a.example.com", Value: []byte("v"), Version: 7}
	if _, err := origin.Publish(context.Background(), s, r); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(context.Background(), "routes", "a.example.com", 0)
	if err != nil || string(got.Value) != "v" {
		t.Fatalf("read back: %+v %v", got, err)
	}
}

func TestOpenDir(t *testing.T) {
	for _, spec := range []string{filepath.Join(t.TempDir(), "a"), "dir://" + filepath.Join(t.TempDir(), "b")} {
		s, err := originurl.Open(context.Background(), spec, originurl.Options{})
		if err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
		roundTrip(t, s)
	}
}

func TestOpenS3(t *testing.T) {
	srv := testserver.StartS3(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	spec := fmt.Sprintf("s3://dp-originurl/pfx/?endpoint=%s&path-style=true&create=true", srv.Endpoint)
	s, err := originurl.Open(context.Background(), spec, originurl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, s)
}

func TestOpenDynamoDB(t *testing.T) {
	srv := testserver.StartDynamo(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	spec := fmt.Sprintf("dynamodb://dp-originurl?endpoint=%s&create=true", srv.Endpoint)
	s, err := originurl.Open(context.Background(), spec, originurl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, s)
}

func TestOpenErrors(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"", "empty origin URL"},
		{"ftp://x", `unknown scheme "ftp"`},
		{"dir://host/path", "three slashes"},
		{"s3://b?path-style=maybe", "path-style"},
		{"s3://b?endpoint=not a url", "endpoint"},
		{"dynamodb://x", "Table"},
		{"http://cache-1:8081", "cache-tier origin is not supported"},
	} {
		_, err := originurl.Open(context.Background(), tc.spec, originurl.Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q) = %v, want an error containing %q", tc.spec, err, tc.want)
		}
	}
}
