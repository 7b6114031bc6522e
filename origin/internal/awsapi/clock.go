package awsapi

import (
	"errors"
	"fmt"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// ErrNoDate means the origin answered without a usable Date header.
var ErrNoDate = errors.New("origin answered without a Date header")

// ServerTime reads the service's clock from the Date header of an answer,
// so that a store can implement origin.Clock without a request of its own:
// any answer will do, a refusal (403, 404) as well as a success, since each
// carries the server's Date. It returns the Date of the answer a call got: from its result's
// metadata when it succeeded (md), or from the HTTP response inside err when
// the origin refused it. It fails wrapping ErrNoDate when neither carries a
// Date, and wrapping callErr itself when the call got no answer at all (a
// network error); its errors start with what (the store and its bucket or
// table).
func ServerTime(what string, md middleware.Metadata, callErr error) (time.Time, error) {
	t, err := serverTime(md, callErr)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: reading the server's time: %w", what, err)
	}
	return t, nil
}

// serverTime is ServerTime without the error's prefix.
func serverTime(md middleware.Metadata, callErr error) (time.Time, error) {
	if callErr == nil {
		if t, ok := awsmiddleware.GetServerTime(md); ok && !t.IsZero() {
			return t, nil
		}
		return time.Time{}, ErrNoDate
	}
	var re interface{ HTTPResponse() *smithyhttp.Response }
	if !errors.As(callErr, &re) || re.HTTPResponse() == nil || re.HTTPResponse().Response == nil {
		return time.Time{}, callErr
	}
	date := re.HTTPResponse().Header.Get("Date")
	if date == "" {
		return time.Time{}, ErrNoDate
	}
	t, err := smithyhttp.ParseTime(date)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %q: %v", ErrNoDate, date, err)
	}
	return t, nil
}
