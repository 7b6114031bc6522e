package s3

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"

	"github.com/dataplane/dataplane/origin/internal/awsapi"
)

// ServerTime returns the time in the Date header of a HEAD of the bucket;
// a refused HEAD (403 without s3:ListBucket) carries it too. It implements
// origin.Clock.
func (s *Store) ServerTime(ctx context.Context) (time.Time, error) {
	out, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)})
	var md middleware.Metadata
	if out != nil {
		md = out.ResultMetadata
	}
	t, err := awsapi.ServerTime(md, err)
	if err != nil {
		return time.Time{}, fmt.Errorf("s3: bucket %q: reading the server's time: %w", s.bucket, err)
	}
	return t, nil
}
