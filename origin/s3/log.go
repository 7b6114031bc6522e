package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// maxHorizonAttempts bounds TrimLog's retries when other trimmers keep
// moving the horizon.
const maxHorizonAttempts = 8

// AppendLog implements origin.Store: one empty object per change. Appending
// the same change again rewrites the same object.
func (s *Store) AppendLog(ctx context.Context, c record.Change) error {
	return s.putChange(ctx, "append log", c, s.logName)
}

// putChange checks c and writes its change object (log entry or pending
// note) under the name nameOf gives it: empty, or holding the key when the
// name holds only the key's hash (keyPart). op names the write in errors.
func (s *Store) putChange(ctx context.Context, op string, c record.Change, nameOf func(record.Change) (string, bool)) error {
	if err := origin.CheckChange(c); err != nil {
		return err
	}
	name, hashed := nameOf(c)
	var body []byte
	if hashed {
		body = []byte(c.Key)
	}
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(name),
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
	})
	if err != nil {
		return s.fail(ctx, op, name, err)
	}
	return nil
}

// parseChange decodes the change object name (with the store prefix)
// under dir (logDir or pendingDir). When the name holds only the key's
// hash, the key is read from the object (one GET) and the name must be
// exactly the one this Store gives that change. ok is false for a name
// that is not a change (or a hashed one whose object is gone or does not
// match it: logged); err is set when the object could not be read.
func (s *Store) parseChange(ctx context.Context, dir, name string) (c record.Change, ok bool, err error) {
	c, hashed, ok := parseLogName(logDir + strings.TrimPrefix(name, s.prefix+dir))
	if !ok || !hashed {
		return c, ok, nil
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(name)})
	if err != nil {
		if isNotFound(err) && ctx.Err() == nil {
			return c, false, nil // trimmed or deleted since the listing
		}
		return c, false, s.fail(ctx, "read change", name, err)
	}
	b, err := readBody(out.Body, record.MaxKeyLen)
	if err != nil && !errors.Is(err, record.ErrCorrupt) {
		return c, false, s.fail(ctx, "read change", name, err)
	}
	c.Key = string(b)
	if want, _ := s.changeName(dir, c); err != nil || record.ValidateKey(c.Namespace, c.Key) != nil || want != name {
		return c, false, nil
	}
	return c, true, nil
}

// ReadLog implements origin.Store. It lists change objects after `after`
// (no GETs), then reads the horizon: reading it after the listing means a
// concurrent TrimLog, which raises the horizon before deleting, can never
// make the listing silently incomplete.
func (s *Store) ReadLog(ctx context.Context, after record.Version, limit int) ([]record.Change, error) {
	if h := record.Version(s.horizon.Load()); origin.Truncated(after, h) {
		return nil, s.truncated(after, h)
	}
	var out []record.Change
	err := s.listLog(ctx, s.logStartAfter(after), func(c record.Change) bool {
		// Stop only at a version boundary, so that the changes of one
		// version are sorted together before the limit cuts them.
		if limit > 0 && len(out) >= limit && c.Version != out[len(out)-1].Version {
			return false
		}
		out = append(out, c)
		return true
	})
	if err != nil {
		return nil, err
	}
	horizon, _, err := s.readHorizon(ctx)
	if err != nil {
		return nil, err
	}
	if origin.Truncated(after, horizon) {
		return nil, s.truncated(after, horizon)
	}
	// The bucket orders equal versions by escaped name; the contract orders
	// them by namespace and key.
	origin.SortChanges(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (s *Store) truncated(after, horizon record.Version) error {
	return fmt.Errorf("s3 read log s3://%s/%s after %s, horizon %s: %w", s.bucket, s.prefix+logDir, after, horizon, origin.ErrLogTruncated)
}

// sawHorizon raises the remembered horizon to h.
func (s *Store) sawHorizon(h record.Version) {
	for {
		cur := s.horizon.Load()
		if uint64(h) <= cur || s.horizon.CompareAndSwap(cur, uint64(h)) {
			return
		}
	}
}

// listLog calls fn for each change object after startAfter in name order
// until fn returns false. Objects that are not change names are logged and
// skipped.
func (s *Store) listLog(ctx context.Context, startAfter string, fn func(record.Change) bool) error {
	in := &s3.ListObjectsV2Input{
		Bucket: aws.String(s.bucket),
		Prefix: aws.String(s.prefix + logDir),
	}
	if startAfter != "" {
		in.StartAfter = aws.String(startAfter)
	}
	for {
		page, err := s.client.ListObjectsV2(ctx, in)
		if err != nil {
			return s.fail(ctx, "list log", s.prefix+logDir, err)
		}
		for _, obj := range page.Contents {
			name := aws.ToString(obj.Key)
			c, ok, err := s.parseChange(ctx, logDir, name)
			if err != nil {
				return err
			}
			if !ok {
				s.logger.Warn("s3 origin: skipping an object in the change log that is not a change", "bucket", s.bucket, "object", name)
				continue
			}
			if !fn(c) {
				return nil
			}
		}
		if !aws.ToBool(page.IsTruncated) || page.NextContinuationToken == nil {
			return nil
		}
		in.ContinuationToken = page.NextContinuationToken
		in.StartAfter = nil
	}
}

// readHorizon returns the trim horizon (0 if the log was never trimmed) and
// the ETag of its object (also with the ErrCorrupt error of a horizon
// object that does not parse).
func (s *Store) readHorizon(ctx context.Context) (record.Version, string, error) {
	name := s.prefix + horizonName
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(name)})
	if err != nil {
		if isNotFound(err) && ctx.Err() == nil {
			return 0, "", nil
		}
		return 0, "", s.fail(ctx, "read log horizon", name, err)
	}
	b, err := readBody(out.Body, 64)
	if err != nil && !errors.Is(err, record.ErrCorrupt) {
		return 0, "", s.fail(ctx, "read log horizon", name, err)
	}
	v, ok := parseVersion(string(bytes.TrimSpace(b)))
	if err != nil || !ok {
		return 0, aws.ToString(out.ETag), fmt.Errorf("s3 read log horizon s3://%s/%s: %w: want 16 hex digits, got %.40q", s.bucket, name, record.ErrCorrupt, b)
	}
	s.sawHorizon(v)
	return v, aws.ToString(out.ETag), nil
}

// TrimLog implements origin.Store. It first raises the horizon (a
// conditional PUT, so concurrent trimmers never lower it), then deletes the
// change objects below before.
func (s *Store) TrimLog(ctx context.Context, before record.Version) error {
	if before <= 1 {
		return nil // no change has a version below 1
	}
	if err := s.raiseHorizon(ctx, before); err != nil {
		return err
	}
	var batch []types.ObjectIdentifier
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: aws.String(s.bucket),
			Delete: &types.Delete{Objects: batch, Quiet: aws.Bool(true)},
		})
		batch = batch[:0]
		if err != nil {
			return s.fail(ctx, "trim log", s.prefix+logDir, err)
		}
		if len(out.Errors) > 0 {
			e := out.Errors[0]
			return fmt.Errorf("s3 trim log: delete s3://%s/%s: %s %s (and %d more)", s.bucket, aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message), len(out.Errors)-1)
		}
		return nil
	}
	in := &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket), Prefix: aws.String(s.prefix + logDir)}
	for {
		page, err := s.client.ListObjectsV2(ctx, in)
		if err != nil {
			return s.fail(ctx, "trim log", s.prefix+logDir, err)
		}
		done := !aws.ToBool(page.IsTruncated) || page.NextContinuationToken == nil
		for _, obj := range page.Contents {
			v, ok := logVersion(strings.TrimPrefix(aws.ToString(obj.Key), s.prefix))
			if ok && v >= before {
				done = true
				break
			}
			// Foreign objects sorting below `before` go too: they would
			// otherwise be skipped with a warning by every ReadLog.
			batch = append(batch, types.ObjectIdentifier{Key: obj.Key})
			if len(batch) == 1000 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if done {
			return flush()
		}
		in.ContinuationToken = page.NextContinuationToken
	}
}

// raiseHorizon makes the horizon at least before.
func (s *Store) raiseHorizon(ctx context.Context, before record.Version) error {
	name := s.prefix + horizonName
	for attempt := 0; attempt < maxHorizonAttempts; attempt++ {
		cur, etag, err := s.readHorizon(ctx)
		if err != nil && !errors.Is(err, record.ErrCorrupt) {
			return err
		}
		if err == nil && cur >= before {
			return nil
		}
		in := &s3.PutObjectInput{
			Bucket:        aws.String(s.bucket),
			Key:           aws.String(name),
			Body:          strings.NewReader(before.String()),
			ContentLength: aws.Int64(int64(len(before.String()))),
			ContentType:   aws.String("text/plain"),
		}
		if etag == "" {
			in.IfNoneMatch = aws.String("*")
		} else {
			in.IfMatch = aws.String(etag) // also replaces a corrupt horizon
		}
		_, perr := s.client.PutObject(ctx, in)
		switch {
		case perr == nil:
			s.sawHorizon(before)
			return nil
		case isConflict(perr) && ctx.Err() == nil:
			continue // another trimmer moved it: look again
		default:
			return s.fail(ctx, "raise log horizon", name, perr)
		}
	}
	return fmt.Errorf("s3 raise log horizon s3://%s/%s: %w after %d attempts", s.bucket, name, origin.ErrConflict, maxHorizonAttempts)
}
