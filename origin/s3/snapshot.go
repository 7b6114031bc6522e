package s3

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/dataplane/dataplane/origin"
)

var (
	_ origin.SnapshotParts  = (*Store)(nil)
	_ origin.SnapshotOpener = (*Store)(nil)
)

// partSnapshots gives Store its PutSnapshot, GetSnapshot and OpenSnapshot
// over its snapshot parts (origin.PartSnapshots).
type partSnapshots = origin.PartSnapshots

// partName is the object of part name of ns: the main object at snap/<ns>,
// the others under snap/<ns>.parts/ ('.' never occurs in a namespace).
func (s *Store) partName(ns, name string) string {
	if name == "" {
		return s.snapshotName(ns)
	}
	return s.snapshotName(ns) + ".parts/" + name
}

// PutSnapshotPart implements origin.SnapshotParts.
func (s *Store) PutSnapshotPart(ctx context.Context, ns, name string, b []byte) error {
	if err := origin.CheckPartName(ns, name); err != nil {
		return err
	}
	obj := s.partName(ns, name)
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(obj),
		Body:          bytes.NewReader(b),
		ContentLength: aws.Int64(int64(len(b))),
		ContentType:   aws.String("application/octet-stream"),
	})
	if err != nil {
		return s.fail(ctx, "put snapshot", obj, err)
	}
	return nil
}

// GetSnapshotPart implements origin.SnapshotParts. Errors reading the body
// wrap origin.ErrUnavailable and name the object.
func (s *Store) GetSnapshotPart(ctx context.Context, ns, name string) (io.ReadCloser, error) {
	if err := origin.CheckPartName(ns, name); err != nil {
		return nil, err
	}
	obj := s.partName(ns, name)
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(obj)})
	if err != nil {
		if isNotFound(err) && ctx.Err() == nil {
			return nil, fmt.Errorf("s3 snapshot s3://%s/%s: %w", s.bucket, obj, origin.ErrNotFound)
		}
		return nil, s.fail(ctx, "get snapshot", obj, err)
	}
	return &body{ReadCloser: out.Body, where: fmt.Sprintf("s3 get snapshot s3://%s/%s", s.bucket, obj)}, nil
}

// DeleteSnapshotPart implements origin.SnapshotParts.
func (s *Store) DeleteSnapshotPart(ctx context.Context, ns, name string) error {
	if err := origin.CheckPartName(ns, name); err != nil {
		return err
	}
	obj := s.partName(ns, name)
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(obj)}); err != nil && !isNotFound(err) {
		return s.fail(ctx, "delete snapshot", obj, err)
	}
	return nil
}

// body marks a failure while streaming an object as the origin being
// unavailable, not the snapshot being corrupt.
type body struct {
	io.ReadCloser
	where string
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%s: %w: %w", b.where, origin.ErrUnavailable, err)
	}
	return n, err
}
