package publisher

import "github.com/dataplane/dataplane/record"

// checkSchema validates rec's value against Config.Schemas, counting a
// refusal. A tombstone always passes, and so does a record whose namespace
// or key is invalid: the write refuses that with its own message.
func (p *Publisher) checkSchema(rec record.Record) error {
	if record.ValidateKey(rec.Namespace, rec.Key) != nil {
		return nil
	}
	if err := p.cfg.Schemas.CheckRecord(rec); err != nil {
		p.m.rejected.Inc()
		return err
	}
	return nil
}
