// Package docs holds the design of the event bus as Markdown: its
// architecture, guarantees, contracts and operations (start at README.md).
// It has no code; its test keeps the pages true: every test they name
// exists, and every link they make stays inside the repository and finds
// its target.
package docs
