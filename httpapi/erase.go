package httpapi

import (
	"errors"
	"net/http"

	"github.com/edupulse/eventbus/event"
)

// eraseDataSubject erases the data subject in the path (G10). It needs no
// body; one is ignored. Erasing an unknown or erased subject answers 200
// the same way: the subject is erased.
func (a *api) eraseDataSubject(w http.ResponseWriter, r *http.Request) {
	if a.admin.Erase == nil {
		writeProblem(w, r, notConfigured("erasing data subjects"))
		return
	}
	subject := r.PathValue("id")
	by := "http (auth off)"
	if info := infoFrom(r.Context()); info != nil && info.token != "" {
		by = "token:" + info.token
	}
	res, err := a.admin.Erase(r.Context(), subject, by)
	if err != nil {
		var perr *event.PersonalError
		if errors.As(err, &perr) {
			writeProblem(w, r, newProblem(http.StatusUnprocessableEntity, ProblemInvalidParameter,
				"the data subject's id in the path "+perr.Reason).atField("id"))
			return
		}
		a.fail(w, r, err)
		return
	}
	a.writeValue(w, r, http.StatusOK, res)
}
