/* The seed's dashboard page. */
#ifndef VIRTMAN_APPLIANCE_DASHBOARD_H
#define VIRTMAN_APPLIANCE_DASHBOARD_H

extern const char dashboard_html[];

#endif
