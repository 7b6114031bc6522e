package publisher

import "github.com/dataplane/dataplane/record"

// checkSchema validates rec's value against Config.Schemas, counting a
// refusal. A tombstone always passes.
func (p *Publisher) checkSchema(rec record.Record) error {
	if err := p.cfg.Schemas.CheckRecord(rec); err != nil {
		p.m.rejected.Inc()
		return err
	}
	return nil
}
