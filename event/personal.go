package event

import "fmt"

// PersonalSpec names a type's data subject field and its personal fields
// (DESIGN "Erasure by crypto-shredding").
type PersonalSpec struct {
	DataSubject string
	Fields      []string
}

// SetPersonal declares the data subject and personal fields of typ, a type
// the registry knows.
func (r *Registry) SetPersonal(typ string, spec PersonalSpec) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.byName[typ]; !ok {
		return fmt.Errorf("%w: %q: declare its personal fields after the type", ErrUnknownType, typ)
	}
	if r.personal == nil {
		r.personal = map[string]PersonalSpec{}
	}
	r.personal[typ] = PersonalSpec{DataSubject: spec.DataSubject, Fields: append([]string(nil), spec.Fields...)}
	return nil
}

// Personal returns the personal-field declaration of typ, if it has one.
func (r *Registry) Personal(typ string) (PersonalSpec, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	spec, ok := r.personal[typ]
	if ok {
		spec.Fields = append([]string(nil), spec.Fields...)
	}
	return spec, ok
}
