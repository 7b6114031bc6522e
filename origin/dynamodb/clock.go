package dynamodb

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go/middleware"

	"github.com/dataplane/dataplane/origin/internal/awsapi"
)

// ServerTime returns the time in the Date header of a DescribeTable answer;
// a refused one (no dynamodb:DescribeTable permission) carries it too. It
// implements origin.Clock.
func (s *Store) ServerTime(ctx context.Context) (time.Time, error) {
	out, err := s.client.DescribeTable(ctx, &ddb.DescribeTableInput{TableName: aws.String(s.table)})
	var md middleware.Metadata
	if out != nil {
		md = out.ResultMetadata
	}
	t, err := awsapi.ServerTime(md, err)
	if err != nil {
		return time.Time{}, fmt.Errorf("dynamodb: table %q: reading the server's time: %w", s.table, err)
	}
	return t, nil
}
