package s3

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// pendingDir holds one empty object per publish in flight, named like a
// change log object ("pending/<version>/<ns>/<p|t>/<escaped key>").
const pendingDir = "pending/"

var _ origin.Pending = (*Store)(nil)

func (s *Store) pendingName(c record.Change) (string, bool) { return s.changeName(pendingDir, c) }

// PutPending implements origin.Pending: one empty object per note.
func (s *Store) PutPending(ctx context.Context, c record.Change) error {
	return s.putChange(ctx, "put pending", c, s.pendingName)
}

// DeletePending implements origin.Pending.
func (s *Store) DeletePending(ctx context.Context, c record.Change) error {
	if err := origin.CheckChange(c); err != nil {
		return err
	}
	name, _ := s.pendingName(c)
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(name)})
	if err != nil && !isNotFound(err) {
		return s.fail(ctx, "delete pending", name, err)
	}
	return nil
}

// ListPending implements origin.Pending with one listing of pending/ (a
// page per 1,000 notes; there are as many notes as publishes in flight).
func (s *Store) ListPending(ctx context.Context, limit int) ([]record.Change, error) {
	in := &s3.ListObjectsV2Input{
		Bucket: aws.String(s.bucket),
		Prefix: aws.String(s.prefix + pendingDir),
	}
	var out []record.Change
	for {
		page, err := s.client.ListObjectsV2(ctx, in)
		if err != nil {
			return nil, s.fail(ctx, "list pending", s.prefix+pendingDir, err)
		}
		for _, obj := range page.Contents {
			name := aws.ToString(obj.Key)
			c, ok, err := s.parseChange(ctx, pendingDir, name)
			if err != nil {
				return nil, err
			}
			if !ok {
				s.logger.Warn("s3 origin: skipping an object among pending notes that is not a change", "bucket", s.bucket, "object", name)
				continue
			}
			out = append(out, c)
			if limit > 0 && len(out) >= limit {
				return out, nil
			}
		}
		if !aws.ToBool(page.IsTruncated) || page.NextContinuationToken == nil {
			return out, nil
		}
		in.ContinuationToken = page.NextContinuationToken
	}
}
