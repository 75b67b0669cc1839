package reuse

// A pconn is linked into up to three intrusive lists at once, one per link
// slot, so moving it never allocates.
const (
	slotTree = iota // a bucket's avail, safe or idle list
	slotLRU         // its server's idle+safe LRU list, or its session's list if private
	slotAll         // all connections of its server on this worker
	numSlots
)

type link struct{ prev, next *pconn }

// plist is an intrusive doubly-linked list of pconns through link slot.
// Front is the most recently inserted.
type plist struct {
	head, tail *pconn
	n          int
	slot       uint8
}

func (l *plist) pushFront(p *pconn) {
	lk := &p.links[l.slot]
	lk.prev, lk.next = nil, l.head
	if l.head != nil {
		l.head.links[l.slot].prev = p
	} else {
		l.tail = p
	}
	l.head = p
	l.n++
}

func (l *plist) remove(p *pconn) {
	lk := &p.links[l.slot]
	if lk.prev != nil {
		lk.prev.links[l.slot].next = lk.next
	} else {
		l.head = lk.next
	}
	if lk.next != nil {
		lk.next.links[l.slot].prev = lk.prev
	} else {
		l.tail = lk.prev
	}
	lk.prev, lk.next = nil, nil
	l.n--
}

func (l *plist) next(p *pconn) *pconn { return p.links[l.slot].next }
