package dynamodb

import (
	"strconv"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Attribute names and fixed sort keys of the table design (see the package
// documentation).
const (
	attrPK      = "pk"
	attrSK      = "sk"
	attrVer     = "ver"
	attrRec     = "rec"
	attrTomb    = "tomb"
	attrSeal    = "seal" // a log entry's record.Seal (key id, digest, signature), when signed
	attrHorizon = "hz"
	attrGen     = "gen"
	attrSize    = "size"
	attrChunks  = "n"
	attrData    = "d"

	recSK = "r"
)

// keyNames names the key attributes in expressions (#pk, #sk), which keeps
// expressions clear of DynamoDB's reserved words.
var keyNames = map[string]string{"#pk": attrPK, "#sk": attrSK}

func str(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }

func num(v uint64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatUint(v, 10)}
}

func itemKey(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{attrPK: str(pk), attrSK: str(sk)}
}

// getNum returns the unsigned number attribute name of item.
func getNum(item map[string]types.AttributeValue, name string) (uint64, bool) {
	n, ok := item[name].(*types.AttributeValueMemberN)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(n.Value, 10, 64)
	return v, err == nil
}

func getBytes(item map[string]types.AttributeValue, name string) ([]byte, bool) {
	b, ok := item[name].(*types.AttributeValueMemberB)
	if !ok {
		return nil, false
	}
	return b.Value, true
}

func getString(item map[string]types.AttributeValue, name string) (string, bool) {
	v, ok := item[name].(*types.AttributeValueMemberS)
	if !ok {
		return "", false
	}
	return v.Value, true
}

func recordPK(ns, key string) string { return "rec#" + ns + "#" + key }

// RecordKey returns the primary key (pk and sk) of the item holding ns/key's
// record. Tests use it to damage a record behind the store's back.
func RecordKey(ns, key string) map[string]types.AttributeValue {
	return itemKey(recordPK(ns, key), recSK)
}

// itemSize estimates an item's size as DynamoDB counts it: attribute names
// plus values (numbers counted generously at their decimal length).
func itemSize(item map[string]types.AttributeValue) int {
	n := 0
	for name, v := range item {
		n += len(name)
		switch v := v.(type) {
		case *types.AttributeValueMemberS:
			n += len(v.Value)
		case *types.AttributeValueMemberN:
			n += len(v.Value)
		case *types.AttributeValueMemberB:
			n += len(v.Value)
		default:
			n++
		}
	}
	return n
}
